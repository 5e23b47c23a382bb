"""The trained model: the GPT, its trainer, weight files, hardware probes, checkpoints from elsewhere and the export. Imports core only (the only stage that imports torch)."""
