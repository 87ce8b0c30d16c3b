{
  "targets": [
    {
      "target_name": "blas",
      "sources": ["blas.c"],
      "cflags": ["-O2"],
      "conditions": [
        ["OS=='mac'", {
          "defines": ["SELFALIGN_ACCELERATE", "ACCELERATE_NEW_LAPACK"],
          "libraries": ["-framework Accelerate"],
          "xcode_settings": { "OTHER_CFLAGS": ["-O2"] }
        }, {
          "libraries": ["-lopenblas"]
        }]
      ]
    }
  ]
}
