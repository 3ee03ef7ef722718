// Package lab builds throw-away network labs on one Linux machine for vipd's end-to-end tests,
// benchmarks and demo: every host is a network namespace with an "eth0" veth joined to a Linux
// bridge that lives in a namespace of its own. Addresses are in a private 10.x /24, no namespace
// has a route out, and nothing in the root namespace is touched.
//
// A lab gets a unique name prefix per run; Close deletes its namespaces (and with them any nft
// tables set in a host), ends by PID every process started through Host.Start, and is safe to
// call more than once. lab.New ties Close to a test's Cleanup; lab.Start is for programs (the
// demo, the benchmarks), which must call Close themselves (also on Ctrl-C).
//
// It also owns the helpers the tests share: ICMP ping and a continuous Pinger, neighbour table
// reads, link cuts, nft drops, and starting vipd or Keepalived with a generated configuration.
// Everything here needs root.
package lab
