{
  "targets": [
    {
      "target_name": "cairn_peercred",
      "sources": ["node-agent/platform/native/peercred.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "cairn_ecdsa",
      "sources": ["ca/issuance/native/ecdsa.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-Wno-deprecated-declarations"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
