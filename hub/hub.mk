# Make targets for hub; included by the root Makefile.
