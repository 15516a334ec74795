"""Speed benchmark: python scripts/benchmark.py [--help]; see unet_upsampling/benchmark.py."""

from unet_upsampling.benchmark import main

if __name__ == "__main__":
    main()
