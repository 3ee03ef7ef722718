package apiserverstub

import (
	"context"
	"fmt"
	"io"
	"log"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

// Build compiles the stand-in program (./cmd/apiserverstub) into dir and returns its path. It
// needs the go tool (PATH, else /usr/local/go/bin/go) and this package's source tree.
func Build(ctx context.Context, dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("build apiserverstub: cannot locate the package source")
	}
	out := filepath.Join(dir, "apiserverstub")
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, "./cmd/apiserverstub")
	cmd.Dir = filepath.Dir(self)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build apiserverstub: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return out, nil
}
