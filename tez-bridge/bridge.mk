# Make targets for tez-bridge; included by the root Makefile.
