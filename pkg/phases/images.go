package phases

import (
	"context"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/vipd-project/vipd/pkg/bundle"
	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
)

// The images phase (packages.imageBundle set: air-gapped installs): every node gets the
// bundle's image archives imported into containerd's k8s.io namespace before kubeadm runs,
// so kubeadm's preflight finds its images and no node pulls from a registry. The bundle is
// checked on the operator's machine before any host is touched (Up), and each node checks
// `kubeadm config images list` against what it holds once imported.

// ImageStage is where an archive is uploaded before `ctr images import` (removed after).
const ImageStage = "/var/lib/bootstrap/images"

// imagesState is the runner's loaded bundle; uploads take turns (mu) so that one archive
// (up to ~100 MB) at a time is in bootstrap's memory.
type imagesState struct {
	once sync.Once
	b    *bundle.Bundle
	err  error
	mu   sync.Mutex
}

// imageBundle loads and checks packages.imageBundle once (nil when unset).
func (r *Runner) imageBundle() (*bundle.Bundle, error) {
	if r.t.Packages.ImageBundle == "" {
		return nil, nil
	}
	r.img.once.Do(func() {
		r.img.b, r.img.err = bundle.Load(r.t.Packages.ImageBundle, r.t.Cluster.KubernetesVersion)
		if r.img.err != nil {
			r.img.err = fmt.Errorf("packages.imageBundle: %w", r.img.err)
		}
	})
	return r.img.b, r.img.err
}

type imagesPhase struct{}

func (imagesPhase) Name() string   { return PhaseImages }
func (imagesPhase) Title() string  { return "Import the image bundle into containerd (air-gapped)" }
func (imagesPhase) Parallel() bool { return true }
func (imagesPhase) Hosts(r *Runner) []topology.Host {
	if r.t.Packages.ImageBundle == "" {
		return nil
	}
	return r.t.Nodes()
}

// imagesTodo is the probe's result: the archives to import.
type imagesTodo struct{ archives []bundle.Image }

func (imagesPhase) Probe(ctx context.Context, r *Runner, h topology.Host) (Status, error) {
	b, err := r.imageBundle()
	if err != nil {
		return Status{}, err
	}
	have, err := r.containerdImages(ctx, h)
	if err != nil {
		return Status{}, err
	}
	var todo imagesTodo
	var lines []string
	for _, im := range b.Images {
		for _, ref := range im.Refs {
			if !have[ref] {
				todo.archives = append(todo.archives, im)
				lines = append(lines, fmt.Sprintf("upload %s (%d MiB) and import it into containerd (ctr -n k8s.io images import): %s", im.File, im.Size>>20, strings.Join(im.Refs, " ")))
				break
			}
		}
	}
	if len(todo.archives) == 0 {
		return Status{Done: true, Detail: fmt.Sprintf("the bundle's %d images are in containerd", len(b.Refs()))}, nil
	}
	lines = append(lines, fmt.Sprintf("check that `kubeadm config images list --kubernetes-version v%s` is all there", r.t.Cluster.KubernetesVersion))
	return Status{Todo: lines, data: todo}, nil
}

// containerdImages lists the image references in containerd's k8s.io namespace on h.
func (r *Runner) containerdImages(ctx context.Context, h topology.Host) (map[string]bool, error) {
	out, _, err := r.probe(ctx, h, "images", "ctr -n k8s.io images ls -q 2>/dev/null; true")
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, l := range strings.Fields(out) {
		have[l] = true
	}
	return have, nil
}

func (imagesPhase) Run(ctx context.Context, r *Runner, h topology.Host, st Status) (string, error) {
	b, err := r.imageBundle()
	if err != nil {
		return "", err
	}
	todo, _ := st.data.(imagesTodo)
	if _, err := r.change(ctx, h, "images/dir", "install -d -m 0700 "+ImageStage); err != nil {
		return "", err
	}
	var bytes int64
	for _, im := range todo.archives {
		dst := path.Join(ImageStage, path.Base(im.File))
		if err := r.uploadArchive(ctx, h, b.Path(im), dst); err != nil {
			return "", err
		}
		if _, err := r.change(ctx, h, "images/import", fmt.Sprintf("trap 'rm -f %[1]s' EXIT; ctr -n k8s.io images import %[1]s >/dev/null", sshx.Quote(dst))); err != nil {
			return "", err
		}
		bytes += im.Size
	}
	// The node's own kubeadm says what it needs: all of it must be there now.
	out, err := r.change(ctx, h, "images/kubeadm-list", fmt.Sprintf("kubeadm config images list --kubernetes-version %s", sshx.Quote("v"+r.t.Cluster.KubernetesVersion)))
	if err != nil {
		return "", err
	}
	have, err := r.containerdImages(ctx, h)
	if err != nil {
		return "", err
	}
	var missing []string
	for _, ref := range strings.Fields(out) {
		if !have[ref] {
			missing = append(missing, ref)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return "", &StepError{Step: "check the imported images", Err: fmt.Errorf("kubeadm on %s needs %s, not in the image bundle %s", h.Name, strings.Join(missing, ", "), b.Dir),
			Fix: "make the bundle again with these images (`bootstrap bundle`), then rerun"}
	}
	return fmt.Sprintf("imported %d image archives (%d MiB) from the bundle; kubeadm's %d images present", len(todo.archives), bytes>>20, len(strings.Fields(out))), nil
}

// uploadArchive uploads one archive, one at a time across hosts (see imagesState).
func (r *Runner) uploadArchive(ctx context.Context, h topology.Host, local, dst string) error {
	r.img.mu.Lock()
	defer r.img.mu.Unlock()
	data, err := os.ReadFile(local)
	if err != nil {
		return fmt.Errorf("read image archive: %w", err)
	}
	return r.upload(ctx, h, dst, data, 0o600, "root:root")
}
