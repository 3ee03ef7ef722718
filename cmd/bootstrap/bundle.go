package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vipd-project/vipd/pkg/bundle"
	"github.com/vipd-project/vipd/pkg/topology"
)

// newBundleCmd is `bootstrap bundle`: an image bundle for air-gapped installs
// (packages.imageBundle) from image archives on this machine.
func newBundleCmd(g *globalOpts) *cobra.Command {
	var out, kubeadm, version string
	cmd := &cobra.Command{
		Use:   "bundle -o DIR IMAGE-ARCHIVE...",
		Short: "Write an image bundle for air-gapped installs (topology packages.imageBundle) from image archives (docker save / ctr images export)",
		Long: `Write an image bundle for air-gapped installs: DIR/images/ holds the given image archives
(docker-archive or OCI, as "docker save IMAGE -o FILE" or "ctr -n k8s.io images export FILE IMAGE"
write them, on a machine that can pull), and DIR/bundle.json names the Kubernetes version, the
images "kubeadm config images list" needs for it, and each archive's image references, size and
SHA-256. It refuses archives that lack one of kubeadm's images. Set packages.imageBundle: DIR in
the topology; "bootstrap up" then imports the archives into containerd on every node before
kubeadm runs. The version is the topology's (-f) unless --kubernetes-version is given; kubeadm
(--kubeadm) must be that version's.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, archives []string) error {
			if out == "" {
				return usageErr(errors.New("bundle: -o DIR is required"))
			}
			if version == "" {
				top, _, err := topology.Load(g.file)
				if err != nil {
					return usageErr(fmt.Errorf("bundle: the Kubernetes version comes from the topology (or --kubernetes-version): %w", err))
				}
				version = top.Cluster.KubernetesVersion
			}
			version = strings.TrimPrefix(version, "v")
			required, err := kubeadmImages(cmd.Context(), kubeadm, version)
			if err != nil {
				return err
			}
			b, err := bundle.Write(out, version, required, archives)
			if err != nil {
				return fmt.Errorf("bundle: %w", err)
			}
			var size int64
			for _, im := range b.Images {
				size += im.Size
			}
			fmt.Fprintf(g.stdout, "wrote image bundle %s: Kubernetes %s, %d archives (%d MiB), %d image references, kubeadm's %d all there\n",
				out, version, len(b.Images), size>>20, len(b.Refs()), len(required))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "bundle directory to create")
	cmd.Flags().StringVar(&kubeadm, "kubeadm", "kubeadm", "kubeadm of the cluster's version, asked which images it needs")
	cmd.Flags().StringVar(&version, "kubernetes-version", "", "Kubernetes version (default: the topology's cluster.kubernetesVersion)")
	return cmd
}

// kubeadmImages runs `kubeadm config images list` for the version (offline: the version is given).
func kubeadmImages(ctx context.Context, kubeadm, version string) ([]string, error) {
	var stdout, stderr bytes.Buffer
	c := exec.CommandContext(ctx, kubeadm, "config", "images", "list", "--kubernetes-version", "v"+version)
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("bundle: %s config images list --kubernetes-version v%s (the images kubeadm needs; --kubeadm names another kubeadm): %w: %s", kubeadm, version, err, strings.TrimSpace(stderr.String()))
	}
	imgs := strings.Fields(stdout.String())
	if len(imgs) == 0 {
		return nil, fmt.Errorf("bundle: %s config images list printed no image", kubeadm)
	}
	return imgs, nil
}
