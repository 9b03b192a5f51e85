"""HSRA networks: blocks, the U-shaped prior, the unfolding network and their registered configurations."""
