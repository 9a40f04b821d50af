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
// non-2xx answers and the JSON decoding of every answer type. It must never
// panic, and every error answer must come out as a typed error with a code.
func FuzzServerAnswers(f *testing.F) {
	f.Add(404, []byte(`{"code":"not_found","message":"no such object"}`))
	f.Add(409, []byte(`{"code":"missing_chunks","message":"2 chunks","missing":["00112233445566778899aabbccddeeff"]}`))
	f.Add(412, []byte(`{"code":"version_mismatch","message":"x","version":7}`))
	f.Add(502, []byte("<html>Bad Gateway</html>"))
	f.Add(200, []byte(`{"entries":[{"index":"`+string(bytes.Repeat([]byte("ab"), 32))+`","name":"AAAA","inode":{"id":"00112233445566778899aabbccddeeff","type":1,"version":1,"nlink":1,"stored":0}}],"more":false}`))
	f.Add(200, []byte(`{"token":"t","expires_at":1,"account":{"user":"a","kdf":{"alg":1,"time":1,"mem":8192,"thr":1,"salt":"AAAAAAAAAAAAAAAAAAAAAA=="},"layout":{"block_size":65536,"chunk_blocks":16,"pad_unit":4096}}}`))
	f.Add(429, []byte{})
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
			&wire.PreloginResponse{}, &wire.Account{}, &wire.HaveResponse{}} {
			_ = json.Unmarshal(body, v)
		}
		if b, err := readBody(resp, nil, 1<<20); err == nil && len(b) != len(body) {
			t.Fatalf("readBody returned %d bytes of %d", len(b), len(body))
		}
	})
}
