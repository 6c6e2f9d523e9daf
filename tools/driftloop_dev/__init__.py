"""Development tooling, never installed in an image: the embedded stack, the demo, the synthetic world, the UI check."""
