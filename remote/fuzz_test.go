package remote

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/sealfs/sealfs/remote/wire"
)

// FuzzServerAnswers feeds arbitrary answers, as a compromised server or a
// proxy could send them, to the client's decoding: the error decoder for
// non-2xx answers and the JSON decoding of every answer type, with the
// consistency check of change feed answers. It must never panic, and every
// error answer must come out as a typed error with a code.
func FuzzServerAnswers(f *testing.F) {
	f.Add(404, []byte(`{"code":"not_found","message":"no such object"}`))
	f.Add(409, []byte(`{"code":"missing_chunks","message":"2 chunks","missing":["00112233445566778899aabbccddeeff"]}`))
	f.Add(412, []byte(`{"code":"version_mismatch","message":"x","version":7}`))
	f.Add(502, []byte("<html>Bad Gateway</html>"))
	f.Add(200, []byte(`{"entries":[{"index":"`+string(bytes.Repeat([]byte("ab"), 32))+`","name":"AAAA","inode":{"id":"00112233445566778899aabbccddeeff","type":1,"version":1,"nlink":1,"stored":0}}],"more":false}`))
	f.Add(200, []byte(`{"token":"t","expires_at":1,"account":{"user":"a","kdf":{"alg":1,"time":1,"mem":8192,"thr":1,"salt":"AAAAAAAAAAAAAAAAAAAAAA=="},"layout":{"block_size":65536,"chunk_blocks":16,"pad_unit":4096}}}`))
	f.Add(429, []byte{})
	f.Add(200, []byte(`{"seq":7,"changes":[{"seq":6,"inode":"00112233445566778899aabbccddeeff","dir":"00000000000000000000000000000000","origin":"ffeeddccbbaa99887766554433221100"},{"seq":7,"inode":"00112233445566778899aabbccddeeff"}],"more":false,"reset":false}`))
	f.Add(200, []byte(`{"seq":3,"changes":[],"more":false,"reset":true}`))
	f.Add(200, []byte(`{"seq":9,"changes":[{"seq":9,"inode":"00112233445566778899aabbccddeeff"},{"seq":8,"inode":"00112233445566778899aabbccddeeff","dir":null}],"more":true}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		c := &Client{}
		if status < 100 || status > 999 {
			status = 500
		}
		resp := &http.Response{StatusCode: status, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Header: http.Header{}}
		if status/100 != 2 {
			err := c.apiError(&request{method: "GET", path: "/x"}, resp)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Wire == nil || ae.Wire.Code == "" {
				t.Fatalf("error answer %d %q decoded to %v", status, body, err)
			}
			_ = err.Error()
			_ = MissingChunks(err)
			return
		}
		for _, v := range []any{&wire.ReadDirResponse{}, &wire.Entry{}, &wire.Inode{}, &wire.LoginResponse{},
			&wire.PreloginResponse{}, &wire.Account{}, &wire.HaveResponse{}, &wire.Changes{}} {
			_ = json.Unmarshal(body, v)
		}
		var ch wire.Changes
		if json.Unmarshal(body, &ch) == nil {
			for _, since := range []int64{-1, 0, 5, 1 << 62} {
				if checkChanges(since, &ch) == nil && !ch.Reset && since >= 0 {
					// What the check accepts lets a cursor advance.
					for _, c := range ch.Changes {
						if c.Seq <= since || c.Seq > ch.Seq {
							t.Fatalf("accepted change %d after %d, seq %d", c.Seq, since, ch.Seq)
						}
					}
				}
			}
		}
		if b, err := readBody(resp, nil, 1<<20); err == nil && len(b) != len(body) {
			t.Fatalf("readBody returned %d bytes of %d", len(b), len(body))
		}
	})
}
