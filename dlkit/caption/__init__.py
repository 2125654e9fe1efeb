"""dlkit caption: Flickr8k-style image captioning (data, CNN-LSTM, soft attention, CNN-Transformer, ViT-GPT2)."""
