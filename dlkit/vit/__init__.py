"""`dlkit vit`: fine-tune a ViT/DeiT image classifier with LoRA, the last block, a linear head or fully."""
