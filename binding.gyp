{
  "targets": [
    {
      "target_name": "wstrace",
      "sources": [
        "addon/module.cc",
        "addon/tracer.cc",
        "addon/variants.cc",
        "addon/sockdiag.cc",
        "addon/netns.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "bpf",
        "bpf/.output"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["<!@(scripts/link-flags.sh)"]
    }
  ]
}
