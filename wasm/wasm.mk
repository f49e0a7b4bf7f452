# Make targets for wasm; included by the root Makefile.
