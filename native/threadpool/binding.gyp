{
  "targets": [
    {
      "target_name": "threadpool",
      "sources": ["threadpool.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(node_llama_cpp_addon)",
        "<(llama_headers)/include",
        "<(llama_headers)/ggml/include"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-O2", "-std=c++17"],
      "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-O2", "-std=c++17"] }
    }
  ]
}
