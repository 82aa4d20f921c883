// Tests read many JSON bodies and assert on them field by field; typing each response shape in
// every test would add noise without catching anything the assertions do not.
declare global {
  interface Response {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    json(): Promise<any>;
  }
}
export {};
