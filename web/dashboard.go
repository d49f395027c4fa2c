package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// ui holds the dashboard: plain HTML, CSS and JavaScript as ES modules (ui/app.js and
// ui/js/), with the uPlot charting library vendored as released (ui/vendor/uplot), so the
// binary serves it with no CDN and the build needs no JavaScript toolchain.
//
//go:embed ui
var ui embed.FS

// dashboardPages are the dashboard's own paths; each serves the one page, whose script
// renders the view named by the path (alerts link to /teams/<id> and /?queue=<name>).
var dashboardPages = []string{"/", "/teams", "/teams/:id", "/rebuilds"}

func (a *API) registerDashboard(r *gin.Engine) {
	static, err := fs.Sub(ui, "ui")
	if err != nil {
		panic("web: embedded ui folder missing: " + err.Error()) // a build defect
	}
	index, err := fs.ReadFile(static, "index.html")
	if err != nil {
		panic("web: embedded ui/index.html missing: " + err.Error())
	}
	g := r.Group("", a.metrics.middleware())
	page := func(c *gin.Context) {
		// The page carries no data, only the app that fetches it; a cached copy
		// would outlive a new binary's script, so revalidate each time.
		c.Header("Cache-Control", "no-cache")
		c.Header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'")
		c.Header("X-Content-Type-Options", "nosniff")
		c.Data(http.StatusOK, "text/html; charset=utf-8", index)
	}
	for _, p := range dashboardPages {
		g.GET(p, page)
	}
	tags := etags(static)
	fileServer := http.StripPrefix("/ui/", http.FileServer(http.FS(static)))
	g.GET("/ui/*file", func(c *gin.Context) {
		// Revalidated on every load (a new binary's modules must never mix with an old
		// one's), but answered 304 by content hash: the embedded files have no dates.
		c.Header("Cache-Control", "no-cache")
		c.Header("X-Content-Type-Options", "nosniff")
		if tag, ok := tags[strings.TrimPrefix(c.Param("file"), "/")]; ok {
			c.Header("ETag", tag)
		}
		fileServer.ServeHTTP(c.Writer, c.Request)
	})
}

// etags names each embedded file by a hash of its content, computed once at start.
func etags(static fs.FS) map[string]string {
	tags := map[string]string{}
	_ = fs.WalkDir(static, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		tags[path] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	return tags
}
