"""Networks defined in this project for tests, benchmarks and the demo.

Not part of fxcfp's analysis API: ``fxcfp.zoo.paper`` holds the paper's six networks (random
initialisation, for coverage and timing), ``fxcfp.zoo.paper_literal`` the paper-literal tree
recursion the benchmarks compare against, and ``fxcfp.zoo.efficientnet_lite`` the pretrained
EfficientNet-Lite0 and its I3D-style inflation that ``make demo`` explains.
"""
