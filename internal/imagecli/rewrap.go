package imagecli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ocikp/ocikp/imagekeys"
	"github.com/ocikp/ocikp/imageref"
	"github.com/ocikp/ocikp/internal/hint"
)

const rewrapSummary = `Change who can decrypt an image without moving its layers: each layer's
file key is opened with a local key (keystore, Keychain, KMS), resealed for
the new recipient set, and only the manifests (and the index) are written.
Layer blobs keep their digests. Every encrypted layer must end with the
same recipients, or nothing is written. A tag that moved while rewrap ran
is not overwritten.

--remove of a recipient that no layer holds is an error (nothing is
written). After writing, rewrap reads the tag back and checks that no
layer it reaches still holds a stanza for a removed recipient.

Removing a recipient stops new access only: whoever held its key before
may have kept the layer keys, or the old blobs. Real revocation needs new
layer keys, which means new layer blobs: --rotate-layer-keys downloads each
layer, decrypts it, encrypts it with a fresh key (ocicrypt's layer cipher),
uploads the new blob and seals the new key only for recipients confirmed
here: keys of this keystore, recipients given with --add, and KMS keys
named with --keep URL. A KMS stanza the image carries and --keep does not
name is dropped, with a warning (anyone who knew the old layer key could
have written it); run with --dry-run first to see. Other schemes' wrapped
keys are dropped: they open the old blobs only.`

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func (c *cmd) rewrap(ctx context.Context, args []string) error {
	fs := c.flags()
	var add, remove multiFlag
	fs.Var(&add, "add", "add a `RECIPIENT` (recipient string, key name, KMS key URL); repeatable")
	fs.Var(&remove, "remove", "remove a `RECIPIENT`, key name, KMS key URL or stanza tag as inspect shows it (an error if no layer holds it); repeatable")
	var keep multiFlag
	fs.Var(&keep, "keep", "with --rotate-layer-keys: seal the new layer keys for the KMS key `URL` the image holds (others are dropped); repeatable")
	to := fs.String("to", "", "write the result under another `IMAGE` name of the same registry or layout instead")
	dryRun := fs.Bool("dry-run", false, "print the plan; write nothing")
	allTags := fs.Bool("all-tags", false, "rewrap every tag of each docker://HOST/REPO named (plain images are skipped)")
	jobs := fs.Int("jobs", 4, "images rewrapped at once")
	fs.BoolVar(&c.allowClassical, "allow-classical", false, "let a layer mix post-quantum and classical-only recipients")
	rotate := fs.Bool("rotate-layer-keys", false, "revoke for real: new layer keys, so new layer blobs (downloaded, re-encrypted, uploaded), sealed only for keystore keys, --add and --keep; other KMS stanzas and schemes' keys are dropped")
	pos, err := c.parse(fs, args, "ocikp rewrap [--add RECIPIENT]... [--remove RECIPIENT|HINT]... [--rotate-layer-keys [--keep URL]...] [--to IMAGE] [--dry-run] [--all-tags] [--json] IMAGE...", rewrapSummary)
	if err != nil {
		return err
	}
	if len(keep) > 0 && !*rotate {
		return usagef("--keep goes with --rotate-layer-keys: without it, every stanza is kept as it is")
	}
	if *rotate && *to != "" {
		return usagef("--rotate-layer-keys writes new blobs where the image is; it does not go with --to")
	}
	if *jobs < 1 || *jobs > 64 {
		return usagef("--jobs: 1 to 64")
	}
	names, err := c.images(pos)
	if err != nil {
		return err
	}
	if *allTags {
		if *to != "" {
			return usagef("--all-tags and --to do not go together")
		}
		if names, err = c.expandTags(ctx, names); err != nil {
			return err
		}
	}
	if len(names) == 0 {
		return usagef("rewrap needs an image")
	}
	if len(add)+len(remove) == 0 && !*rotate {
		return usagef("rewrap needs --add, --remove or --rotate-layer-keys")
	}
	if *to != "" && len(names) != 1 {
		return usagef("--to takes one source image")
	}
	p, done, err := c.provider()
	if err != nil {
		return err
	}
	defer done()
	var addT, removeT []*imagekeys.Target
	for i, a := range add {
		t, err := imagekeys.NewTarget(ctx, p, a, false)
		if err != nil {
			return fmt.Errorf("--add %d of %d: %w", i+1, len(add), err)
		}
		addT = append(addT, t)
	}
	for i, r := range remove {
		t, err := imagekeys.NewTarget(ctx, p, r, true)
		if err != nil {
			return fmt.Errorf("--remove %d of %d: %w", i+1, len(remove), err)
		}
		removeT = append(removeT, t)
	}
	var keepT []*imagekeys.Target
	for i, u := range keep {
		t, err := imagekeys.NewKeepTarget(ctx, p, u)
		if err != nil {
			return fmt.Errorf("--keep %d of %d: %w", i+1, len(keep), err)
		}
		keepT = append(keepT, t)
	}
	// --keep targets ride with --add: they confirm, and add nothing.
	addT = append(addT, keepT...)
	if *allTags {
		// Each tag alone may lack R; none holding it stops the run
		// before anything is written.
		if err := c.heldSomewhere(ctx, names, append(slices.Clone(removeT), keepT...), *jobs); err != nil {
			return err
		}
	}
	opts := imagekeys.RewrapOptions{Provider: c.providerName, Add: addT, Remove: removeT, DryRun: *dryRun, Rotate: *rotate, Known: p}
	if *rotate {
		tmp, err := os.MkdirTemp("", "ocikp-rotate-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		opts.TmpDir = tmp
	}
	results := make([]*imagekeys.Result, len(names))
	sem := make(chan struct{}, *jobs)
	var wg sync.WaitGroup
	var mu sync.Mutex
	finished := 0
	notHeld := map[*imagekeys.Target]int{} // --all-tags: images that do not hold a --remove or --keep
	for i, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			res, unheld := c.rewrapOne(ctx, n, *to, p, opts, keepT, *allTags)
			if *allTags && errors.Is(res.Err(), imagekeys.ErrNotEncrypted) {
				res.Status, res.Reason = imagekeys.StatusSkipped, "not encrypted"
			}
			results[i] = res
			mu.Lock()
			for _, t := range unheld {
				notHeld[t]++
			}
			if d := droppedKMS(res); len(d) > 0 {
				printf(c.stderr, "ocikp: warning: %s: the new layer keys are not sealed for KMS keys found in the image and not named with --keep: %s\n",
					oneLine(res.Image), oneLine(strings.Join(d, ", ")))
			}
			if len(names) > 1 {
				finished++
				printf(c.stderr, "[%d/%d] %s: %s\n", finished, len(names), oneLine(res.Image), res.Status)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	failed := 0
	for _, r := range results {
		if r.Status == imagekeys.StatusFailed {
			failed++
		}
	}
	if err := c.finish(results, failed); err != nil {
		return err
	}
	// --all-tags: checked before the run too; this catches tags that moved
	// between the two reads.
	for _, t := range append(slices.Clone(removeT), keepT...) {
		if notHeld[t] == len(names) {
			return fmt.Errorf("%s %s: no tag of the repositories %w", targetFlag(t), t.Display(), imagekeys.ErrNotHeld)
		}
	}
	return nil
}

// heldSomewhere reads the manifests of every image named and fails, naming
// the target, when one of targets is held by none of them. Images that
// cannot be read are left for the run to report.
func (c *cmd) heldSomewhere(ctx context.Context, names []string, targets []*imagekeys.Target, jobs int) error {
	if len(targets) == 0 {
		return nil
	}
	held := make([]bool, len(targets))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, jobs)
	for _, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			img, _, _, err := c.open(ctx, n)
			if err != nil {
				return
			}
			unheld := imagekeys.Unheld(img, c.providerName, targets)
			mu.Lock()
			defer mu.Unlock()
			for i, t := range targets {
				held[i] = held[i] || !slices.Contains(unheld, t)
			}
		}()
	}
	wg.Wait()
	for i, t := range targets {
		if !held[i] {
			return notHeldAnywhere(t)
		}
	}
	return nil
}

func notHeldAnywhere(t *imagekeys.Target) error {
	return fmt.Errorf("%s %s: no tag of the repositories %w; nothing was written", targetFlag(t), t.Display(), imagekeys.ErrNotHeld)
}

// targetFlag is the flag that named a --remove or --keep target.
func targetFlag(t *imagekeys.Target) string {
	if t.Keep {
		return "--keep"
	}
	return "--remove"
}

// droppedKMS lists the KMS stanzas a rotation of res dropped, once each.
func droppedKMS(res *imagekeys.Result) []string {
	var out []string
	for _, p := range res.Platforms {
		for _, l := range p.Layers {
			for _, k := range l.NewKey {
				if k.Status == imagekeys.KeyDropped && !slices.Contains(out, k.Recipient) {
					out = append(out, k.Recipient)
				}
			}
		}
	}
	return out
}

// rewrapOne rewraps one image. A --remove or --keep target that no layer
// holds fails it, unless allTags (then it is returned, for the run to
// judge across tags).
func (c *cmd) rewrapOne(ctx context.Context, name, to string, op imagekeys.Opener, opts imagekeys.RewrapOptions, keep []*imagekeys.Target, allTags bool) (*imagekeys.Result, []*imagekeys.Target) {
	res := &imagekeys.Result{Image: name}
	fail := func(err error) (*imagekeys.Result, []*imagekeys.Target) { return res.Fail(err), nil }
	img, st, ref, err := c.open(ctx, name)
	if err != nil {
		return fail(err)
	}
	// Before anything is opened or uploaded: a recipient the image does
	// not hold was most likely mistyped or mistaken.
	unheld := imagekeys.Unheld(img, opts.Provider, append(slices.Clone(opts.Remove), keep...))
	if len(unheld) > 0 && !allTags {
		return fail(hint.Wrap(imagekeys.NotHeldError(targetFlag(unheld[0]), img.Name, unheld[0]), "see who holds each layer: ocikp inspect --keys "+img.Name))
	}
	// A seed provider's wrapped key beside the envelope may be a removed
	// recipient's, and names none; a stanza under another provider name
	// is not rewrapped here: only new layer keys take either away.
	if len(opts.Remove) > 0 && !opts.Rotate {
		err := imagekeys.LegacyHeld(img)
		if err == nil {
			err = imagekeys.HeldElsewhere(img, opts.Provider, opts.Remove)
		}
		if err != nil {
			return fail(hint.Wrap(fmt.Errorf("--remove: %s: %w; nothing was written", img.Name, err),
				"--rotate-layer-keys gives the layers new keys and drops the old wrapped keys"))
		}
	}
	if opts.Rotate {
		bs, ok := st.(imagekeys.BlobStore)
		if !ok {
			return fail(fmt.Errorf("%s: %w", img.Name, imagekeys.ErrReadOnly))
		}
		opts.Blobs = bs
	}
	res.Image, res.OldDigest = img.Name, img.Digest
	plans, changed, err := imagekeys.Plan(ctx, img, op, opts)
	if err != nil {
		return fail(explain(img.Name, err))
	}
	res.Platforms = plans
	switch {
	case opts.DryRun:
		res.Status = imagekeys.StatusPlanned
		return res, unheld
	case !changed && to == "":
		res.Status, res.NewDigest = imagekeys.StatusUpToDate, img.Digest
		return res, unheld
	}
	dst := st
	if to != "" {
		if dst, err = c.destination(ctx, ref, img, to); err != nil {
			return fail(err)
		}
	}
	d, err := imagekeys.Write(ctx, img, st, dst)
	if err != nil {
		if errors.Is(err, imagekeys.ErrMoved) {
			return fail(hint.Wrap(fmt.Errorf("%s: %w; nothing was overwritten", img.Name, err), "inspect the image again and rerun the rewrap"))
		}
		return fail(hint.Wrap(fmt.Errorf("%s: writing the new manifests: %w", img.Name, err),
			"the tag is written last and still points at the image it did: rerun when the registry answers"))
	}
	// Read back what the name now points at, as a puller would.
	dstName := img.Name
	if to != "" {
		dstName = to
	}
	removed := slices.DeleteFunc(slices.Clone(opts.Remove), func(t *imagekeys.Target) bool { return slices.Contains(unheld, t) })
	verified, err := imagekeys.VerifyRemoved(ctx, dstName, dst, d, removed)
	if err != nil {
		return fail(hint.Wrap(err, "inspect it (ocikp inspect --keys "+dstName+") and rerun the rewrap"))
	}
	res.Status, res.NewDigest, res.Verified = imagekeys.StatusRewrapped, d, verified
	return res, unheld
}

// expandTags lists the tags of each repository named.
func (c *cmd) expandTags(ctx context.Context, names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		repo, err := c.repository(n)
		if err != nil {
			return nil, err
		}
		opts, err := c.registryOptions()
		if err != nil {
			return nil, err
		}
		tags, err := imagekeys.Tags(ctx, repo, opts)
		if err != nil {
			return nil, fmt.Errorf("listing the tags of %s: %w", repo, err)
		}
		slices.Sort(tags)
		for _, t := range tags {
			out = append(out, "docker://"+repo.Tag(t).String())
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the repositories have no tags")
	}
	return out, nil
}

// repository reads docker://HOST/REPO, with or without a tag.
func (c *cmd) repository(n string) (name.Repository, error) {
	s, ok := strings.CutPrefix(n, "docker://")
	if !ok {
		return name.Repository{}, usagef("--all-tags takes docker://HOST/REPO names, not %.100q", n)
	}
	opts := []name.Option{name.StrictValidation}
	if !c.tlsVerify {
		opts = append(opts, name.Insecure)
	}
	if r, err := name.ParseReference(s, opts...); err == nil {
		return r.Context(), nil
	}
	r, err := name.NewRepository(s, opts...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("%.100q: %w", n, imageref.ErrSyntax)
	}
	return r, nil
}

// destination opens --to: another tag or repository of the same
// registry (blobs are mounted, not copied), or another name in the same
// layout.
func (c *cmd) destination(ctx context.Context, src *imageref.Ref, img *imagekeys.Image, to string) (imagekeys.Store, error) {
	r, err := imageref.Parse(to, !c.tlsVerify)
	if err != nil {
		return nil, fmt.Errorf("--to %.200q: %w", to, err)
	}
	if r.Transport != src.Transport {
		return nil, usagef("--to must use the source's transport (%s)", src.Transport)
	}
	opts, err := c.registryOptions()
	if err != nil {
		return nil, err
	}
	switch r.Transport {
	case imageref.Docker:
		if r.Registry.Context().RegistryStr() != src.Registry.Context().RegistryStr() {
			return nil, hint.Wrap(errors.New("--to names another registry: rewrap moves no layer, so it writes only where the layers already are"),
				"copy the image there first (skopeo copy), then rewrap it there")
		}
		dst := &imagekeys.Registry{Ref: r.Registry, Opts: opts}
		if r.Registry.Context().Name() != src.Registry.Context().Name() {
			if err := dst.Mount(ctx, src.Registry.Context(), img.Blobs()); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case imageref.OCI:
		if r.Path != src.Path {
			return nil, errors.New("--to names another layout: rewrap moves no layer, so it writes only in the source's layout")
		}
		return nil, errors.New("--to within a layout is not supported yet: rewrap in place, or copy the image to a new name with skopeo first")
	}
	return nil, fmt.Errorf("--to: %w", imagekeys.ErrReadOnly)
}

// explain adds the hints a failed plan needs.
func explain(image string, err error) error {
	switch {
	case errors.Is(err, imagekeys.ErrNotEncrypted):
		return hint.Wrap(fmt.Errorf("%s: %w", image, err), "encrypt it first: skopeo copy --encryption-key provider:ocikp:RECIPIENT")
	case errors.Is(err, imagekeys.ErrNoEnvelope):
		return hint.Wrap(fmt.Errorf("%s: %w under this provider name", image, err),
			"see its schemes with: ocikp inspect "+image, "other providers' or schemes' layers are converted by ocikp migrate; --name NAME if ocikp runs under another provider name")
	}
	return fmt.Errorf("%s: %w", image, err)
}

// finish prints the results (a lone failure only as its error line) and
// returns the error that sets the exit status.
func (c *cmd) finish(results []*imagekeys.Result, failed int) error {
	if c.asJSON {
		if err := c.printJSON(results); err != nil {
			return err
		}
	} else if !(len(results) == 1 && failed == 1) {
		c.printResults(results)
	}
	if failed > 0 {
		if len(results) == 1 {
			return results[0].Err()
		}
		return fmt.Errorf("%d of %d images failed; nothing was written for them", failed, len(results))
	}
	return nil
}

func (c *cmd) printResults(results []*imagekeys.Result) {
	for _, r := range results {
		for _, p := range r.Platforms {
			for i, l := range p.Layers {
				where := fmt.Sprintf("layer %d", i)
				if p.Platform != "" {
					where = p.Platform + " " + where
				}
				var changes []string
				if l.Rotated {
					changes = append(changes, "new layer key and blob")
					for _, d := range l.Dropped {
						changes = append(changes, "dropped "+oneLine(d))
					}
				}
				for _, a := range l.Added {
					changes = append(changes, "+ "+oneLine(a))
				}
				for _, rm := range l.Removed {
					changes = append(changes, "- "+oneLine(rm.Hint))
				}
				if len(changes) == 0 {
					changes = []string{"unchanged"}
				}
				printf(c.stderr, "%s: %s: %d -> %d recipients: %s\n", oneLine(r.Image), where, len(l.Before), len(l.After), strings.Join(changes, ", "))
				for _, k := range l.NewKey {
					printf(c.stderr, "  %-8s %s (%s)\n", k.Status, oneLine(k.Recipient), k.Reason)
				}
			}
		}
		for _, v := range r.Verified {
			printf(c.stderr, "verified: %s\n", oneLine(v))
		}
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "IMAGE\tSTATUS\tDIGEST\tREASON")
	for _, r := range results {
		d := r.NewDigest
		if d == "" {
			d = r.OldDigest
		}
		printf(tw, "%s\t%s\t%s\t%s\n", oneLine(r.Image), r.Status, short(d), oneLine(r.Reason))
	}
	tw.Flush()
}
