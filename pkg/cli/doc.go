// Package cli holds what the two command lines, vipd and bootstrap, share so that they behave
// alike: the version line (--version and the version command) and the exit code of a usage
// error (2, like getopt-based tools and GNU coreutils).
package cli
