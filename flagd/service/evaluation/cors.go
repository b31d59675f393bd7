package evaluation

import (
	"net/http"

	"github.com/flagpole-dev/flagpole/server"
)

// corsExposed are the response headers browsers may read (flagd's list).
const corsExposed = "Accept, Accept-Encoding, Accept-Post, Connect-Accept-Encoding, Connect-Content-Encoding, " +
	"Content-Encoding, Grpc-Accept-Encoding, Grpc-Encoding, Grpc-Message, Grpc-Status, Grpc-Status-Details-Bin"

// corsRules are flagd's rs/cors settings for the evaluation port: preflights may ask
// for HEAD GET POST PUT PATCH DELETE with any request header; flagd's exposed
// headers. Which origins are allowed is the shared server.CORS policy.
var corsRules = server.CORSRules{
	Methods:       []string{http.MethodHead, http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
	ExposeHeaders: corsExposed,
}
