import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * A full garbage collection, now. V8 collects the old generation when it grows, not when the process
 * goes quiet, so a one-off burst of garbage (PGlite's initdb image, ~300 MB of buffers) can stay
 * resident for hours in a process that then idles. `--expose-gc` set at run time puts `gc` only on
 * contexts created afterwards: the one made here, not the process's global object.
 */
export function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}
