"""Features: audio log-mel, face landmarks and tracking, mouth crops, the feature cache, clip manifests."""
