"""Task heads. Saliency: the SalNAS decoder (`saliency.decode`, steps in `hwnas.nn.blocks`).
Classification: global pool + linear (`hwnas.nn.blocks.LinearHead`). Salient objects: FocusNet's
head (`sod`: CFEM, AFE, FRM; the variant spec is `hwnas.space.tasks`)."""
