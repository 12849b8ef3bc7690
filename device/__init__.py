"""bloomkit's device side: light enough for a Raspberry Pi, and never imports TensorFlow."""
