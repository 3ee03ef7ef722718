package nspawn

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// imageFile is one file of a FROM-scratch image: Src on this machine, Dst in the image.
type imageFile struct {
	Src, Dst string
	Mode     int64
	// NetBind gives the file the capability cap_net_bind_service=ep (as upstream CoreDNS's
	// image does: it runs as uid 65532 and binds :53).
	NetBind bool
}

// imageSpec describes a single-layer FROM-scratch image.
type imageSpec struct {
	Tags       []string // registry.k8s.io/pause:3.10 ...
	Entrypoint []string
	User       string
	Files      []imageFile
}

// writeImage writes spec as a docker-archive tarball (manifest.json, the config, one
// layer.tar): what `ctr images import` and `docker load` accept. The output is
// reproducible (mtime 0, uid/gid 0) and written under a temporary name first.
func writeImage(out string, spec imageSpec) error {
	epoch := time.Unix(0, 0).UTC()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	dirs := map[string]bool{}
	mkdirs := func(p string) error {
		var parents []string
		for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
			parents = append(parents, d)
		}
		sort.Strings(parents)
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				return err
			}
		}
		return nil
	}
	file := func(hdr *tar.Header, r io.Reader) error {
		if err := mkdirs("/" + hdr.Name); err != nil {
			return err
		}
		hdr.Typeflag, hdr.ModTime, hdr.Format = tar.TypeReg, epoch, tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	// The skeleton every image gets: users for the uids the components run as, a /tmp.
	for _, d := range []string{"/var/run/x", "/root/x", "/home/nonroot/x"} {
		if err := mkdirs(d); err != nil {
			return fmt.Errorf("image %s: %w", out, err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("image %s: %w", out, err)
	}
	dirs["/tmp"] = true
	skel := []struct{ name, data string }{
		{"etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
		{"etc/group", "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"},
		{"etc/nsswitch.conf", "hosts: files dns\n"},
	}
	for _, s := range skel {
		if err := file(&tar.Header{Name: s.name, Mode: 0o644, Size: int64(len(s.data))}, strings.NewReader(s.data)); err != nil {
			return fmt.Errorf("image %s: %w", out, err)
		}
	}
	for _, f := range spec.Files {
		src, err := os.Open(f.Src)
		if err != nil {
			return fmt.Errorf("image %s: %w", out, err)
		}
		st, err := src.Stat()
		if err != nil {
			src.Close()
			return fmt.Errorf("image %s: %w", out, err)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o755
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(f.Dst, "/"), Mode: mode, Size: st.Size()}
		if f.NetBind {
			// vfs_cap_data revision 2: magic 0x02000000 with the effective bit, then
			// permitted = 1<<CAP_NET_BIND_SERVICE (10), inheritable 0, second words 0.
			hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string([]byte{1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})}
		}
		err = file(hdr, src)
		src.Close()
		if err != nil {
			return fmt.Errorf("image %s: add %s: %w", out, f.Src, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("image %s: %w", out, err)
	}
	lsum := sha256.Sum256(layer.Bytes())
	created := epoch.Format(time.RFC3339)
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": created,
		"config": map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Entrypoint": spec.Entrypoint, "User": spec.User, "WorkingDir": "/"},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(lsum[:])}},
		"history": []map[string]any{{"created": created, "created_by": "vipd test/nspawn (FROM scratch)"}},
	})
	if err != nil {
		return fmt.Errorf("image %s: config: %w", out, err)
	}
	csum := sha256.Sum256(cfg)
	cname := hex.EncodeToString(csum[:]) + ".json"
	lname := hex.EncodeToString(lsum[:]) + "/layer.tar"
	man, err := json.Marshal([]map[string]any{{"Config": cname, "RepoTags": spec.Tags, "Layers": []string{lname}}})
	if err != nil {
		return fmt.Errorf("image %s: manifest: %w", out, err)
	}
	tmp := out + ".tmp"
	of, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("create image %s: %w", out, err)
	}
	ow := tar.NewWriter(of)
	put := func(name string, b []byte) error {
		if err := ow.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := ow.Write(b)
		return err
	}
	err = ow.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: hex.EncodeToString(lsum[:]) + "/", Mode: 0o755, ModTime: epoch})
	if err == nil {
		err = put(lname, layer.Bytes())
	}
	if err == nil {
		err = put(cname, cfg)
	}
	if err == nil {
		err = put("manifest.json", man)
	}
	if err == nil {
		err = ow.Close()
	}
	if cerr := of.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write image %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}
