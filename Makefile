# Set-up and test entry points (run as root on Debian 12; see README.md).
.PHONY: demo test build portable install uninstall bench clean

demo:            ## build the executable and run the ADD/CHECK/DEL demo
	./build.sh --demo

build:
	./build.sh

install:         ## install dist/nsveth into /opt/cni/bin (scripts/install.sh; rollback/status there)
	./scripts/install.sh install

uninstall:       ## remove what `make install` put there
	./scripts/install.sh uninstall

portable:        ## the portable bundle dist/portable/nsveth (glibc >= 2.31 nodes)
	./scripts/build-portable.sh

test:            ## install what is needed, build, run the whole test suite
	./scripts/test.sh

bench:           ## side-by-side benchmark against the reference Go ptp plugin
	./build.sh --onefile && .venv/bin/python bench/bench.py

clean:
	rm -rf --one-file-system build dist .venv .pytest_cache  # never into a mount left in build/portable/root
