package web

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/gin-gonic/gin"
)

// ui holds the dashboard: plain HTML, CSS and JavaScript with hand-drawn SVG charts, so
// the binary serves it with no CDN and the build needs no JavaScript toolchain.
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
	fileServer := http.StripPrefix("/ui/", http.FileServer(http.FS(static)))
	g.GET("/ui/*file", func(c *gin.Context) {
		c.Header("Cache-Control", "no-cache")
		c.Header("X-Content-Type-Options", "nosniff")
		fileServer.ServeHTTP(c.Writer, c.Request)
	})
}
