"""nn.Modules only: generators, encoders, discriminators and the perceptual distance."""
