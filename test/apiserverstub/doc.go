// Package apiserverstub is a stand-in for kube-apiserver in vipd's lab tests, benchmarks and
// demo: a TLS server (certificate from a throw-away CA the caller makes with NewCA) that answers
// the endpoints a load balancer in front of the control plane sees:
//
//   - /readyz, /healthz, /livez: "ok" (200), what vipd's HTTPS health check asks;
//   - /version: a JSON version object whose "host" field names the master that answered, so a
//     client can see where the load balancer sent it;
//   - /api/v1/namespaces/default/pods?watch=1 (any path with watch=1 or watch=true): a watch
//     stream that sends one JSON line every WatchInterval (default 200 ms), chunked, until the
//     client goes away; each line carries the host and a sequence number.
//
// Serve runs it in-process on a listener the caller made (e.g. inside a lab host's namespace);
// the program in ./cmd/apiserverstub runs it as a process (so a test can SIGKILL a master by PID),
// and Build compiles that program. StartMasters runs that program on test/lab hosts (Kill and
// Start by PID), and a Prober is the client's side: a steady stream of new TLS requests to
// VIP:6443 with every result recorded (failures, which master answered, the longest gap). For
// the demo:
//
//	ms, _ := apiserverstub.StartMasters(ctx, l, masters, []net.IP{vip.AsSlice()})
//	p := apiserverstub.StartProber(client.Dial, ms.ClientTLS(), "10.77.0.100:6443", 50*time.Millisecond, 2*time.Second)
//	_ = ms.Kill("m3")                  // then: p.LongestGap(t), apiserverstub.Summary(p.Between(t, time.Now()))
//
// Only StartMasters needs root (network namespaces).
package apiserverstub
