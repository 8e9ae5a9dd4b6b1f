// Command tlogreader is an independent C2SP tlog-tiles client for the tests: it reads our log with
// Go's golang.org/x/mod/sumdb/tlog (TileHashReader) and sumdb/note, code that is not ours, from a
// gateway (http://.../tlog, bearer token in TLOG_TOKEN) or an exported directory.
//
// Usage: tlogreader BASE VERIFIER_KEY OLD_CHECKPOINT_FILE
//
// It checks the checkpoint's signature, every entry's inclusion proof against the signed root,
// and the consistency proof from the older signed checkpoint, and prints one JSON line.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type source struct {
	base, token string
	fetched     int
}

func (s *source) get(path string) ([]byte, error) {
	s.fetched++
	if !strings.HasPrefix(s.base, "http") {
		return os.ReadFile(filepath.Join(s.base, path))
	}
	req, err := http.NewRequest("GET", s.base+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body, err
}

// C2SP paths are Go's without the height: tile/8/L/N -> tile/L/N.
func (s *source) Height() int { return 8 }
func (s *source) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(tiles))
	for i, t := range tiles {
		d, err := s.get(strings.Replace(t.Path(), "tile/8/", "tile/", 1))
		if err != nil {
			return nil, err
		}
		data[i] = d
	}
	return data, nil
}
func (s *source) SaveTiles([]tlog.Tile, [][]byte) {}

func open(text []byte, verifier note.Verifier) (tlog.Tree, string) {
	n, err := note.Open(text, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint body: %q", n.Text)
	}
	size, err1 := strconv.ParseInt(lines[1], 10, 64)
	root, err2 := base64.StdEncoding.DecodeString(lines[2])
	if err1 != nil || err2 != nil || len(root) != tlog.HashSize {
		fail("checkpoint body: %q", n.Text)
	}
	var hash tlog.Hash
	copy(hash[:], root)
	return tlog.Tree{N: size, Hash: hash}, lines[0]
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "tlogreader: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: tlogreader BASE VERIFIER_KEY OLD_CHECKPOINT_FILE")
	}
	src := &source{base: strings.TrimSuffix(os.Args[1], "/"), token: os.Getenv("TLOG_TOKEN")}
	verifier, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fail("verifier key: %v", err)
	}
	text, err := src.get("checkpoint")
	if err != nil {
		fail("%v", err)
	}
	tree, origin := open(text, verifier)
	hashes := tlog.TileHashReader(tree, src)
	checked := 0
	for bundle := int64(0); bundle*256 < tree.N; bundle++ {
		width := tree.N - bundle*256
		path := tlog.Tile{H: 8, L: -1, N: bundle, W: 256}
		if width < 256 {
			path.W = int(width)
		}
		data, err := src.get(strings.Replace(path.Path(), "tile/8/data/", "tile/entries/", 1))
		if err != nil {
			fail("%v", err)
		}
		for i := int64(0); i < int64(path.W); i++ {
			if len(data) < 2 || len(data) < 2+int(data[0])<<8|int(data[1]) {
				fail("entry bundle %d is cut short at entry %d", bundle, i)
			}
			size := int(data[0])<<8 | int(data[1])
			entry := data[2 : 2+size]
			data = data[2+size:]
			index := bundle*256 + i
			proof, err := tlog.ProveRecord(tree.N, index, hashes)
			if err != nil {
				fail("prove record %d: %v", index, err)
			}
			if err := tlog.CheckRecord(proof, tree.N, tree.Hash, index, tlog.RecordHash(entry)); err != nil {
				fail("check record %d: %v", index, err)
			}
			checked++
		}
		if len(data) != 0 {
			fail("entry bundle %d has %d bytes after its entries", bundle, len(data))
		}
	}
	oldText, err := os.ReadFile(os.Args[3])
	if err != nil {
		fail("%v", err)
	}
	old, _ := open(oldText, verifier)
	proof, err := tlog.ProveTree(tree.N, old.N, hashes)
	if err != nil {
		fail("prove tree %d -> %d: %v", old.N, tree.N, err)
	}
	if err := tlog.CheckTree(proof, tree.N, tree.Hash, old.N, old.Hash); err != nil {
		fail("check tree %d -> %d: %v", old.N, tree.N, err)
	}
	out, _ := json.Marshal(map[string]any{"origin": origin, "size": tree.N, "entries_checked": checked,
		"consistent_from": old.N, "fetches": src.fetched})
	fmt.Println(string(out))
}
