"""Tools beside the pix2pix core: each imports the core (config, dataset, generator, ...), never the
reverse.

    python -m tools.demo        # the built-in synthetic shoes
    python -m tools.data        # get/make/check data
    python -m tools.evaluate    # metrics, FID/KID, results page
    python -m tools.app         # browser sketch pad
    python -m tools.bench       # training-step, loader and inference benchmarks
"""
