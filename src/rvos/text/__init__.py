"""Text utilities shared by the methods: expression decoupling (static / motion cues)."""
