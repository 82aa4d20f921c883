{
  "targets": [
    {
      "target_name": "cairn_peercred",
      "sources": ["node-agent/platform/native/peercred.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
