"""Data readers more than one group uses: images (caption, clip, vit) and image-caption records (caption,
clip). Groups keep their own formatting, splitting and collation in their data.py."""
