"""One module per export format (`base.Format` is what each implements)."""
