import { describe, expect, it } from 'vitest';
import { parsePodFromCgroup } from '../../../node-agent/caller/k8s-attestor.js';

const UID = '2c48913c-b29f-11e7-9350-020968147796';
const UID_ = UID.replaceAll('-', '_');
const ID = '9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961';
const OTHER_ID = 'aff34703e5e1f89443e9a1bffcc80f43f74d4808a2dd22c8f88c08547b323934';

/** Every controller line of a cgroup v1 host, as /proc/<pid>/cgroup prints them. */
const v1 = (path: string): string =>
  [
    '12:hugetlb', '11:cpuset', '10:freezer', '9:net_cls,net_prio', '8:perf_event', '7:memory', '6:blkio',
    '5:cpu,cpuacct', '4:devices', '3:pids', '2:rdma', '1:name=systemd',
  ]
    .map((h) => `${h}:${h === '2:rdma' ? '/' : path}`)
    .join('\n') + '\n0::/\n';

describe('parsePodFromCgroup', () => {
  const cases: [string, string, string, string][] = [
    ['v1, cgroupfs driver, docker, burstable', v1(`/kubepods/burstable/pod${UID}/${ID}`), UID, ID],
    ['v1, cgroupfs driver, containerd, besteffort', v1(`/kubepods/besteffort/pod${UID}/${ID}`), UID, ID],
    ['v1, cgroupfs driver, guaranteed (no QoS level)', v1(`/kubepods/pod${UID}/${ID}`), UID, ID],
    ['v1, systemd driver, docker', v1(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/docker-${ID}.scope`), UID, ID],
    ['v1, systemd driver, containerd inside containerd.service', v1(`/system.slice/containerd.service/kubepods-burstable-pod${UID_}.slice:cri-containerd:${ID}`), UID, ID],
    ['v2, systemd driver, containerd, burstable', `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope\n`, UID, ID],
    ['v2, systemd driver, containerd, besteffort', `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope\n`, UID, ID],
    ['v2, systemd driver, containerd, guaranteed', `0::/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope\n`, UID, ID],
    ['v2, systemd driver, CRI-O', `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-${ID}.scope\n`, UID, ID],
    ['v1, cgroupfs driver, CRI-O', v1(`/kubepods/burstable/pod${UID}/crio-${ID}`), UID, ID],
    ['v2, cgroupfs driver, containerd', `0::/kubepods/burstable/pod${UID}/${ID}\n`, UID, ID],
    ['v1, kind node (kubelet inside a docker container)', v1(`/docker/${OTHER_ID}/kubepods/besteffort/pod${UID}/${ID}`), UID, ID],
    [
      'v2, kind node with the systemd driver',
      `0::/system.slice/docker-${OTHER_ID}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope\n`,
      UID,
      ID,
    ],
    ['v2, seen from the agent’s own cgroup namespace', `0::/../../kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope\n`, UID, ID],
    ['static pod (config-hash UID, no dashes)', `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6a5ecc6d4d1b6e3b0c5f5d4e4b3a2c1d.slice/cri-containerd-${ID}.scope\n`, '6a5ecc6d4d1b6e3b0c5f5d4e4b3a2c1d', ID],
  ];

  it.each(cases)('%s', (_name, text, podUid, containerId) => {
    expect(parsePodFromCgroup(text)).toEqual({ podUid, containerId });
  });

  it('turns systemd-escaped UIDs back into the dashed form the API uses', () => {
    const p = parsePodFromCgroup(`0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`);
    expect(p?.podUid).toBe(UID);
    expect(p?.podUid).not.toContain('_');
  });

  const negatives: [string, string][] = [
    ['a login session', '0::/user.slice/user-1000.slice/session-2.scope\n'],
    ['systemd itself', '0::/init.scope\n'],
    ['a system service', '0::/system.slice/containerd.service\n'],
    ['a plain docker container outside Kubernetes', `0::/system.slice/docker-${ID}.scope\n`],
    ['a v1 host process', v1('/user.slice/user-1000.slice/session-2.scope')],
    ['CRI-O’s conmon in the pod slice', `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-conmon-${ID}.scope\n`],
    ['the pod slice itself (no container)', `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice\n`],
    ['a cgroupfs pod directory (no container)', v1(`/kubepods/burstable/pod${UID}`)],
    ['the QoS slice', '0::/kubepods.slice/kubepods-besteffort.slice\n'],
    ['a cgroup the container made below itself', `0::/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope/init\n`],
    ['a container ID that is not 64 hex digits', `0::/kubepods/burstable/pod${UID}/${ID.slice(0, 40)}\n`],
    ['a UID with mixed separators', `0::/kubepods/burstable/pod2c48913c_b29f-11e7-9350-020968147796/${ID}\n`],
    ['two containers across v1 controllers', `4:devices:/kubepods/burstable/pod${UID}/${ID}\n3:pids:/kubepods/burstable/pod${UID}/${OTHER_ID}\n`],
    ['nothing', ''],
    ['garbage', 'not a cgroup file\n\n:::\n'],
  ];

  it.each(negatives)('%s → undefined', (_name, text) => {
    expect(parsePodFromCgroup(text)).toBeUndefined();
  });
});
