"""What the classifier groups share (vit, adapter; clip's reports and previews): the train config and data
splits (`classifier`), the `eval`/`predict`/`sweep` commands (`commands`) and an image dataset's preview
(`preview`)."""
