package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vipd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckValidExample(t *testing.T) {
	code, out, errs := runCLI(t, "check", "--no-host-checks", "-c", "../../deploy/vipd.yaml")
	if code != 0 || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("check deploy/vipd.yaml: code %d, out %q, err %q", code, out, errs)
	}
}

func TestCheckReportsFieldAndLine(t *testing.T) {
	p := writeFile(t, "vrrp:\n  interface: eth0\n  vrid: 300\n  vips: [10.0.0.1/24]\n  prioritty: 5\n")
	code, _, errs := runCLI(t, "check", "-c", p)
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if !strings.Contains(errs, p+":5:") || !strings.Contains(errs, `unknown key "vrrp.prioritty"`) {
		t.Fatalf("error does not name the file, line and key: %q", errs)
	}
	p = writeFile(t, "vrrp:\n  interface: eth0\n  vrid: 300\n  vips: [10.0.0.1/24]\n")
	if code, _, errs = runCLI(t, "check", "-c", p); code != 1 || !strings.Contains(errs, p+":3: vrrp.vrid: must be 1-255, got 300") {
		t.Fatalf("code %d, err %q", code, errs)
	}
}

func TestCheckMissingFile(t *testing.T) {
	code, _, errs := runCLI(t, "check", "-c", "/nonexistent/vipd.yaml")
	if code != 1 || !strings.Contains(errs, "/nonexistent/vipd.yaml") {
		t.Fatalf("code %d, err %q", code, errs)
	}
}

func TestStatusWithoutDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	code, _, errs := runCLI(t, "status", "--socket", sock)
	if code != 3 || !strings.Contains(errs, "vipd is not answering on "+sock) {
		t.Fatalf("code %d, err %q", code, errs)
	}
}

func TestRunRefusesMissingInterface(t *testing.T) {
	// Preflight fails before any socket or address is touched: safe in any namespace.
	p := writeFile(t, "vrrp:\n  interface: vipdtest404\n  vips: [10.0.0.1/24]\nstats:\n  listen: 127.0.0.1:18404\n")
	code, _, errs := runCLI(t, "run", "-c", p)
	if code != 1 || !strings.Contains(errs, "vipdtest404") {
		t.Fatalf("code %d, err %q", code, errs)
	}
}

func TestVersion(t *testing.T) {
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(out, "vipd ") || !strings.Contains(out, "(commit ") {
		t.Fatalf("code %d out %q", code, out)
	}
}

func TestVersionFlagAndCommandAgree(t *testing.T) {
	code1, out1, _ := runCLI(t, "--version")
	code2, out2, _ := runCLI(t, "version")
	if code1 != 0 || code2 != 0 || out1 != out2 || !strings.Contains(out1, "(commit ") || !strings.Contains(out1, "go1.") {
		t.Fatalf("--version: %d %q; version: %d %q", code1, out1, code2, out2)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"--bogus"}, {"check", "extra"}, {"run", "--nope"}, {"status", "--socket"}} {
		if code, _, errs := runCLI(t, args...); code != 2 || !strings.Contains(errs, "vipd --help") {
			t.Errorf("%v: exit %d (want 2), stderr %q", args, code, errs)
		}
	}
}

func TestImport(t *testing.T) {
	code, out, errs := runCLI(t, "import", "--keepalived", "../../pkg/importer/testdata/reference-keepalived.conf",
		"--haproxy", "../../pkg/importer/testdata/reference-haproxy.cfg")
	if code != 0 || !strings.Contains(out, "interface: ens33") {
		t.Fatalf("code %d, err %q, out:\n%s", code, errs, out)
	}
	if !strings.Contains(out, "auth_pass_file: /etc/vipd/vrrp-pass") || strings.Contains(out, "123456") {
		t.Errorf("the VRRP password is not left to a file:\n%s", out)
	}
	// The output passes vipd check (meant for the LB host: its interfaces and files are not here).
	code, out, errs = runCLI(t, "import", "--keepalived", "../../pkg/importer/testdata/unicast-keepalived.conf",
		"--haproxy", "../../pkg/importer/testdata/unicast-haproxy.cfg")
	if code != 0 {
		t.Fatalf("code %d, err %q", code, errs)
	}
	p := writeFile(t, out)
	if code, _, errs := runCLI(t, "check", "--no-host-checks", "-c", p); code != 0 {
		t.Fatalf("vipd check on the imported file: %d %s\n%s", code, errs, out)
	}
	if code, _, errs := runCLI(t, "import", "--keepalived", "/nonexistent/keepalived.conf"); code != 1 || !strings.Contains(errs, "/nonexistent/keepalived.conf") {
		t.Errorf("missing file: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "import"); code != 2 || !strings.Contains(errs, "--keepalived is required") {
		t.Errorf("no flags: %d %q", code, errs)
	}
}
