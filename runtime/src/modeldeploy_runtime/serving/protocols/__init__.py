"""HTTP mappings of the data plane: KServe V1 and the Open Inference Protocol (V2)."""
