// Package bundle reads and writes image bundles for air-gapped installs (topology
// packages.imageBundle, `bootstrap bundle`): a directory holding the container images a
// cluster needs as image archives (docker-archive or OCI, as `docker save` and `ctr images
// export` write them) under images/, and bundle.json naming the Kubernetes version, the
// images kubeadm needs for it, and per archive the image references it holds, its size and
// SHA-256. bootstrap uploads the archives to every node and imports them into containerd
// (`ctr -n k8s.io images import`) before kubeadm runs, so no node pulls from a registry.
package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// IndexFile is the name of the index inside a bundle directory.
const IndexFile = "bundle.json"

// Index is bundle.json.
type Index struct {
	// KubernetesVersion the bundle was made for ("1.33.6", no "v").
	KubernetesVersion string `json:"kubernetesVersion"`
	// Required are the images `kubeadm config images list` named for that version.
	Required []string `json:"required"`
	Images   []Image  `json:"images"`
}

// Image is one archive of the bundle.
type Image struct {
	File   string   `json:"file"` // relative to the bundle directory: images/NAME.tar
	Refs   []string `json:"refs"` // image references it holds (registry.k8s.io/pause:3.10)
	Size   int64    `json:"size"`
	SHA256 string   `json:"sha256"`
}

// Bundle is a loaded, checked bundle.
type Bundle struct {
	Dir string
	Index
}

// Path returns the local path of an archive.
func (b *Bundle) Path(im Image) string { return filepath.Join(b.Dir, filepath.FromSlash(im.File)) }

// Refs returns every image reference in the bundle, sorted.
func (b *Bundle) Refs() []string {
	var out []string
	for _, im := range b.Images {
		out = append(out, im.Refs...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Missing returns the references of want the bundle does not hold.
func (b *Bundle) Missing(want []string) []string {
	have := b.Refs()
	var out []string
	for _, w := range want {
		if _, ok := slices.BinarySearch(have, w); !ok {
			out = append(out, w)
		}
	}
	return out
}

// Load reads dir/bundle.json and checks it: the version is the one wanted (when not ""),
// every required image is in an archive, every archive exists with its recorded size. (The
// SHA-256 is checked by Verify, which reads every byte.)
func Load(dir, version string) (*Bundle, error) {
	data, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		return nil, fmt.Errorf("image bundle %s: %w (make one with `bootstrap bundle`)", dir, err)
	}
	b := &Bundle{Dir: dir}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b.Index); err != nil {
		return nil, fmt.Errorf("image bundle %s: %s: %w", dir, IndexFile, err)
	}
	if version != "" && strings.TrimPrefix(b.KubernetesVersion, "v") != strings.TrimPrefix(version, "v") {
		return nil, fmt.Errorf("image bundle %s is for Kubernetes %s, the topology asks for %s", dir, b.KubernetesVersion, version)
	}
	for _, im := range b.Images {
		if im.File == "" || filepath.IsAbs(im.File) || strings.Contains(im.File, "..") || len(im.Refs) == 0 {
			return nil, fmt.Errorf("image bundle %s: %s: bad entry %q (refs %v)", dir, IndexFile, im.File, im.Refs)
		}
		st, err := os.Stat(b.Path(im))
		if err != nil {
			return nil, fmt.Errorf("image bundle %s: %w", dir, err)
		}
		if st.Size() != im.Size {
			return nil, fmt.Errorf("image bundle %s: %s is %d bytes, %s says %d", dir, im.File, st.Size(), IndexFile, im.Size)
		}
	}
	if m := b.Missing(b.Required); len(m) > 0 {
		return nil, fmt.Errorf("image bundle %s lacks images kubeadm %s needs: %s", dir, b.KubernetesVersion, strings.Join(m, ", "))
	}
	return b, nil
}

// Verify reads every archive and checks its SHA-256.
func (b *Bundle) Verify() error {
	for _, im := range b.Images {
		sum, _, err := fileSHA256(b.Path(im))
		if err != nil {
			return fmt.Errorf("image bundle %s: %w", b.Dir, err)
		}
		if sum != im.SHA256 {
			return fmt.Errorf("image bundle %s: %s has SHA-256 %s, %s says %s (damaged or replaced)", b.Dir, im.File, sum, IndexFile, im.SHA256)
		}
	}
	return nil
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// ArchiveRefs returns the image references an image archive holds: docker-archive's
// manifest.json RepoTags, and OCI's index.json annotations (io.containerd.image.name, or
// org.opencontainers.image.ref.name when it is a whole reference).
func ArchiveRefs(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var refs []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not an image archive (tar): %w", path, err)
		}
		switch strings.TrimPrefix(hdr.Name, "./") {
		case "manifest.json":
			var m []struct{ RepoTags []string }
			if err := json.NewDecoder(io.LimitReader(tr, 16<<20)).Decode(&m); err != nil {
				return nil, fmt.Errorf("%s: manifest.json: %w", path, err)
			}
			for _, e := range m {
				refs = append(refs, e.RepoTags...)
			}
		case "index.json":
			var ix struct {
				Manifests []struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"manifests"`
			}
			if err := json.NewDecoder(io.LimitReader(tr, 16<<20)).Decode(&ix); err != nil {
				return nil, fmt.Errorf("%s: index.json: %w", path, err)
			}
			for _, m := range ix.Manifests {
				if n := m.Annotations["io.containerd.image.name"]; n != "" {
					refs = append(refs, n)
				} else if n := m.Annotations["org.opencontainers.image.ref.name"]; strings.ContainsAny(n, "/:") {
					refs = append(refs, n)
				}
			}
		}
	}
	slices.Sort(refs)
	refs = slices.Compact(refs)
	if len(refs) == 0 {
		return nil, fmt.Errorf("%s: no image reference in it (want a docker-archive with RepoTags or an OCI archive with image names, as `docker save IMAGE` or `ctr images export FILE IMAGE` write)", path)
	}
	return refs, nil
}

// Write makes a bundle in dir (created; it must not hold one already) from image archives:
// each is copied to dir/images/, its references read, and bundle.json written last (so a
// bundle without its index is visibly unfinished). It fails, writing nothing, when the
// archives lack a required image.
func Write(dir, version string, required, archives []string) (*Bundle, error) {
	b := &Bundle{Dir: dir, Index: Index{KubernetesVersion: strings.TrimPrefix(version, "v"), Required: required}}
	for _, a := range archives {
		refs, err := ArchiveRefs(a)
		if err != nil {
			return nil, err
		}
		b.Images = append(b.Images, Image{File: "images/" + filepath.Base(a), Refs: refs})
	}
	seen := map[string]bool{}
	for _, im := range b.Images {
		if seen[im.File] {
			return nil, fmt.Errorf("two archives named %s: rename one", filepath.Base(im.File))
		}
		seen[im.File] = true
	}
	if m := b.Missing(required); len(m) > 0 {
		return nil, fmt.Errorf("the archives lack images kubeadm %s needs: %s", version, strings.Join(m, ", "))
	}
	if _, err := os.Stat(filepath.Join(dir, IndexFile)); err == nil {
		return nil, fmt.Errorf("%s already holds a bundle (%s): give a new directory", dir, IndexFile)
	}
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		return nil, fmt.Errorf("create bundle: %w", err)
	}
	for i, a := range archives {
		dst := b.Path(b.Images[i])
		sum, n, err := copyFile(a, dst)
		if err != nil {
			return nil, err
		}
		b.Images[i].Size, b.Images[i].SHA256 = n, sum
	}
	data, err := json.MarshalIndent(b.Index, "", "  ")
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, IndexFile+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", IndexFile, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, IndexFile)); err != nil {
		return nil, fmt.Errorf("write %s: %w", IndexFile, err)
	}
	return b, nil
}

func copyFile(src, dst string) (string, int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return "", 0, fmt.Errorf("create %s: %w", dst, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return "", 0, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
