// Kernel peer credentials for Unix-domain sockets: SO_PEERCRED (pid, uid, gid as the kernel
// recorded them at connect time) and, where the kernel has it (Linux >= 6.5), SO_PEERPIDFD, a
// pidfd that pins the peer process so a recycled pid cannot impersonate it during attestation.
// Also execve(2), which Node 20 lacks: a process that must run with other V8 flags (the agent's
// small young generation) restarts itself in place, same pid, under its supervisor.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
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
  // A signal (a CPU profiler's SIGPROF, a child's SIGCHLD) can interrupt even a zero-timeout poll,
  // and poll is never restarted: EINTR says nothing about the process, so ask again.
  int r;
  do r = poll(&p, 1, 0);
  while (r < 0 && errno == EINTR);
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

static void free_strings(char** list) {
  if (!list) return;
  for (char** p = list; *p; p++) free(*p);
  free(list);
}

// A JS string as a new C string (NULL on failure or an embedded NUL, which execve could not pass).
static char* c_string(napi_env env, napi_value value) {
  size_t len;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) return NULL;
  char* out = malloc(len + 1);
  if (!out) return NULL;
  if (napi_get_value_string_utf8(env, value, out, len + 1, &len) != napi_ok || strlen(out) != len) {
    free(out);
    return NULL;
  }
  return out;
}

// A JS array of strings as a NULL-terminated C array.
static char** c_strings(napi_env env, napi_value array) {
  uint32_t n;
  if (napi_get_array_length(env, array, &n) != napi_ok) return NULL;
  char** out = calloc((size_t)n + 1, sizeof *out);
  if (!out) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    if (napi_get_element(env, array, i, &item) != napi_ok || !(out[i] = c_string(env, item))) {
      free_strings(out);
      return NULL;
    }
  }
  return out;
}

// execve(path, argv, env) -> does not return; throws with the errno when the kernel refuses.
static napi_value Execve(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 3) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "execve expects (path, argv, env)");
    return NULL;
  }
  char* path = c_string(env, args[0]);
  char** argv = c_strings(env, args[1]);
  char** envp = c_strings(env, args[2]);
  if (!path || !argv || !envp) {
    free(path);
    free_strings(argv);
    free_strings(envp);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "execve expects a path, an array of arguments and an array of NAME=value strings, without NUL bytes");
    return NULL;
  }
  // Node marks stdin, stdout and stderr close-on-exec; the new image must inherit them.
  for (int fd = 0; fd <= 2; fd++) {
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0) fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
  }
  execve(path, argv, envp);
  int err = errno;
  for (int fd = 0; fd <= 2; fd++) {
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
  free(path);
  free_strings(argv);
  free_strings(envp);
  char message[256];
  snprintf(message, sizeof message, "execve: %s", strerror(err));
  napi_throw_error(env, "ERR_CAIRN_EXECVE", message);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"peerCredentials", NULL, PeerCredentials, NULL, NULL, NULL, napi_default, NULL},
      {"pidfdAlive", NULL, PidfdAlive, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, CloseFd, NULL, NULL, NULL, napi_default, NULL},
      {"execve", NULL, Execve, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
