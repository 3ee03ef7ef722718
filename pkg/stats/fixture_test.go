package stats

import (
	"time"
)

// hostileAddr is a backend name that would run script if the page did not
// escape it.
const hostileAddr = `<script>alert("x")</script>:6443`

// testNow is the fixed "now" of the fake snapshots.
var testNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// fakeSnapshot is a master LB with three backends (one DOWN), a frontend and
// a two-node cluster with a split-brain alarm.
func fakeSnapshot() Snapshot {
	return Snapshot{
		Node:    "lb1",
		Version: "0.1.0-test",
		Time:    testNow,
		Started: testNow.Add(-2*time.Hour - 3*time.Minute),
		VRRP: VRRPView{
			State:             StateMaster,
			Priority:          100,
			EffectivePriority: 100,
			MasterAddr:        "192.168.10.141",
			VIPs:              []string{"192.168.10.100/24"},
			HoldsVIP:          true,
			Interface:         "ens33",
			VRID:              51,
			ProtoVersion:      3,
			AdvertInterval:    Duration(time.Second),
			Since:             testNow.Add(-3*time.Minute - 12*time.Second),
			Transitions: []Transition{
				{From: StateInit, To: StateBackup, At: testNow.Add(-2 * time.Hour), Reason: "startup"},
				{From: StateBackup, To: StateMaster, At: testNow.Add(-3*time.Minute - 12*time.Second), Reason: "master down timer expired (no advert for 3.61s)"},
			},
			TransitionsTotal: 2,
			AdvertsSent:      7200,
			AdvertsReceived:  180,
			GARPsSent:        12,
			Drops:            map[string]uint64{"ttl": 3, "auth": 1},
			SourceTable:      map[string]uint64{"source_table_full": 40, "source_evicted": 6, "source_expired": 2},
			SourcesBound:     64,
		},
		Frontend: &FrontendView{
			Listen: ":6443", Listening: true, CurrentConns: 42, TotalConns: 123456,
			RefusedByCap: 0, MaxConns: 20000, BytesIn: 5 << 20, BytesOut: 3 << 30, Errors: 2,
			RefusedPerSource: 17, MaxConnsPerSource: 1000,
			TimedOut: map[string]uint64{"first_byte_timeout": 9, "half_closed_timeout": 4, "idle_timeout": 0},
		},
		Backends: []BackendView{
			{
				Addr: "192.168.10.138:6443", Up: true, Since: testNow.Add(-2 * time.Hour),
				LastCheck: testNow.Add(-1500 * time.Millisecond), LastResult: "HTTP 200",
				LastLatency: Duration(2300 * time.Microsecond), CheckFailures: 1, Transitions: 1,
				CurrentConns: 20, TotalConns: 60000, BytesIn: 2 << 20, BytesOut: 1 << 30,
			},
			{
				Addr: "192.168.10.139:6443", Up: false, Since: testNow.Add(-3*time.Minute - 12*time.Second),
				LastCheck: testNow.Add(-400 * time.Millisecond), LastResult: "dial tcp 192.168.10.139:6443: connect: connection refused",
				LastLatency: Duration(800 * time.Microsecond), CheckFailures: 57, Transitions: 3,
				CurrentConns: 0, TotalConns: 3456, BytesIn: 1 << 20, BytesOut: 1 << 29,
				ConnErrors: 4, Retries: 4,
			},
			{
				Addr: hostileAddr, Up: true, Since: testNow.Add(-90 * time.Second),
				LastCheck: testNow.Add(-1 * time.Second), LastResult: "HTTP 200",
				LastLatency: Duration(31 * time.Millisecond), Transitions: 1,
				CurrentConns: 22, TotalConns: 60000, BytesIn: 2 << 20, BytesOut: 1 << 30,
			},
		},
		Cluster: &ClusterView{
			Enabled: true,
			Members: []MemberView{
				{Name: "lb1", Addr: "192.168.10.141:7946", Self: true, Alive: true, VRRPState: StateMaster,
					Priority: 100, HoldsVIP: true, ConfigFingerprint: "9f2c1ab44e0d7788", Version: "0.1.0-test",
					Backends: map[string]bool{"192.168.10.138:6443": true, "192.168.10.139:6443": false}},
				{Name: "lb2", Addr: "192.168.10.143:7946", Alive: true, VRRPState: StateMaster,
					Priority: 90, HoldsVIP: true, ConfigFingerprint: "9f2c1ab44e0d7788", Version: "0.1.0-test",
					LastSeen: testNow.Add(-800 * time.Millisecond),
					Backends: map[string]bool{"192.168.10.138:6443": true, "192.168.10.139:6443": true}},
			},
			Alarms: []Alarm{
				{Kind: AlarmSplitBrain, Since: testNow.Add(-5 * time.Second),
					Message: "lb1 and lb2 are both MASTER for VRID 51; check that IP protocol 112 passes between them"},
				{Kind: AlarmBackendDisagreement, Since: testNow.Add(-3 * time.Minute),
					Message: "192.168.10.139:6443 is DOWN on lb1 but UP on lb2"},
			},
		},
	}
}
