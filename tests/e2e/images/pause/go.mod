module mllab.local/e2e/pause

go 1.24
