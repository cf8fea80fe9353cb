"""AGPIS-data: the dataset format, its loader and validator, and the builders that make
training data from real product photos (`agpis data build`) or from drawn products
(`agpis data synth`). See docs/data.md."""
