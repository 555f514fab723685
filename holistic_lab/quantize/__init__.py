"""Chapter 08: quantized versions of every Holistic stage model."""
