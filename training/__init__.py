"""Training: data -> masks -> UNet -> engine bundle. Imports engines, never stream."""
