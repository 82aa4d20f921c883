// Kernel peer credentials for Unix-domain sockets: SO_PEERCRED (pid, uid, gid as the kernel
// recorded them at connect time) and, where the kernel has it (Linux >= 6.5), SO_PEERPIDFD, a
// pidfd that pins the peer process so a recycled pid cannot impersonate it during attestation.
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <node_api.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define CHECK(call)                                                     \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, "ERR_CAIRN_NAPI", "N-API call failed: " #call); \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

static int int_arg(napi_env env, napi_callback_info info, int32_t* out) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return -1;
  napi_valuetype type;
  if (napi_typeof(env, argv[0], &type) != napi_ok || type != napi_number) return -1;
  return napi_get_value_int32(env, argv[0], out) == napi_ok ? 0 : -1;
}

static napi_value throw_errno(napi_env env, const char* what, int err) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_throw_error(env, err == EBADF || err == ENOTSOCK || err == ENOTCONN ? "ERR_CAIRN_NOT_A_SOCKET" : "ERR_CAIRN_PEERCRED", message);
  return NULL;
}

static napi_value set_int(napi_env env, napi_value obj, const char* key, int64_t value) {
  napi_value v;
  if (napi_create_int64(env, value, &v) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, key, v) != napi_ok) return NULL;
  return obj;
}

// peerCredentials(fd) -> { pid, uid, gid, pidfd }   (pidfd is -1 when the kernel lacks SO_PEERPIDFD)
static napi_value PeerCredentials(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_arg(env, info, &fd) != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "peerCredentials expects a file descriptor");
    return NULL;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
  int pidfd = -1;
  socklen_t plen = sizeof pidfd;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &plen) != 0) pidfd = -1;
  napi_value obj;
  CHECK(napi_create_object(env, &obj));
  if (!set_int(env, obj, "pid", cred.pid) || !set_int(env, obj, "uid", cred.uid) || !set_int(env, obj, "gid", cred.gid) ||
      !set_int(env, obj, "pidfd", pidfd)) {
    if (pidfd >= 0) close(pidfd);
    napi_throw_error(env, "ERR_CAIRN_NAPI", "could not build the result");
    return NULL;
  }
  return obj;
}

// pidfdAlive(pidfd) -> boolean: a pidfd turns readable when its process exits.
static napi_value PidfdAlive(napi_env env, napi_callback_info info) {
  int32_t pidfd;
  if (int_arg(env, info, &pidfd) != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "pidfdAlive expects a pidfd");
    return NULL;
  }
  struct pollfd p = {.fd = pidfd, .events = POLLIN};
  int r = poll(&p, 1, 0);
  if (r < 0) return throw_errno(env, "poll(pidfd)", errno);
  napi_value result;
  CHECK(napi_get_boolean(env, r == 0, &result));
  return result;
}

// closeFd(fd)
static napi_value CloseFd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_arg(env, info, &fd) != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "closeFd expects a file descriptor");
    return NULL;
  }
  if (fd >= 0) close(fd);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"peerCredentials", NULL, PeerCredentials, NULL, NULL, NULL, napi_default, NULL},
      {"pidfdAlive", NULL, PidfdAlive, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, CloseFd, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
