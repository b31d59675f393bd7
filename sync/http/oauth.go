package httpsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// maxCredentialFile bounds the client-id and client-secret files.
const maxCredentialFile = 64 << 10

// oauthAuth gets bearer tokens with the OAuth 2 client-credentials grant, as flagd:
// the id and secret go in the form body (AuthStyleInParams). With a folder, the id
// and secret are read from <folder>/client-id and <folder>/client-secret before every
// poll, and a change starts a new token source. Tokens are cached until they expire.
// Only the source's Run goroutine uses it.
type oauthAuth struct {
	cfg    flagsync.OAuth
	client *http.Client // the source's client: same CA, timeout and redirect rules

	id, secret string
	ts         oauth2.TokenSource
}

// credentials returns the client id and secret, from the files if a folder is set.
func (o *oauthAuth) credentials() (id, secret string, err error) {
	if o.cfg.Folder == "" {
		return o.cfg.ClientID, o.cfg.ClientSecret, nil
	}
	read := func(name string) (string, error) {
		p := filepath.Join(o.cfg.Folder, name)
		f, err := os.Open(p)
		if err != nil {
			return "", fmt.Errorf("oauth.folder: %w", err)
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxCredentialFile+1))
		if err != nil {
			return "", fmt.Errorf("oauth.folder: reading %s: %w", p, err)
		}
		v := strings.TrimSpace(string(data))
		if v == "" || len(data) > maxCredentialFile {
			return "", fmt.Errorf("oauth.folder: %s must hold one non-empty value", p)
		}
		return v, nil
	}
	if id, err = read("client-id"); err != nil {
		return "", "", err
	}
	if secret, err = read("client-secret"); err != nil {
		return "", "", err
	}
	return id, secret, nil
}

// header returns "<type> <access token>" for the Authorization header.
func (o *oauthAuth) header(_ context.Context) (string, error) {
	id, secret, err := o.credentials()
	if err != nil {
		return "", err
	}
	if o.ts == nil || id != o.id || secret != o.secret {
		cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: o.cfg.TokenURL, AuthStyle: oauth2.AuthStyleInParams}
		// The token source keeps this context for every refresh: it carries only the
		// HTTP client, whose timeout bounds each token request.
		o.ts = cc.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, o.client))
		o.id, o.secret = id, secret
	}
	tok, err := o.ts.Token()
	if err != nil {
		// A RetrieveError's text quotes the token endpoint's whole answer; keep only
		// the status and the standard error fields.
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			msg := re.Response.Status
			if re.ErrorCode != "" {
				msg += ": " + re.ErrorCode
			}
			if re.ErrorDescription != "" {
				msg += " (" + re.ErrorDescription + ")"
			}
			return "", fmt.Errorf("oauth: the token endpoint (oauth.tokenUrl) answered %s", msg)
		}
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return "", fmt.Errorf("oauth: getting a token from oauth.tokenUrl: %w", err)
	}
	return tok.Type() + " " + tok.AccessToken, nil
}
