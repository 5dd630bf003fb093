{
  description = "flywheel-bench: cold vs warm Nix and Bazel builds against build caches, and proof that builds survive a bad cache";

  inputs = {
    nixpkgs.url = "github:nixos/nixpkgs/nixos-25.05";
    # Not following our nixpkgs: its lib starts nixpkgs' NixOS test driver with a JSON
    # configuration file (`nixos-test-driver -c`), which nixos-25.05's driver does not take.
    # Its own lock pins the nixos-unstable it was tested with; that nixpkgs builds the VM
    # images and the driver, ours the harness and the tools inside the guest.
    nix-vm-test.url = "github:numtide/nix-vm-test";
  };

  outputs = { self, nixpkgs, nix-vm-test }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The tools the harness measures and runs; `nix run .#bench` puts them on PATH.
      benchTools = pkgs: with pkgs; [ nix bazel_7 nginx qemu gcc git coreutils ];

      harness = pkgs: pkgs.rustPlatform.buildRustPackage {
        pname = "flywheel-bench";
        version = (builtins.fromTOML (builtins.readFile ./harness/Cargo.toml)).package.version;
        src = pkgs.lib.cleanSource ./.;
        cargoLock.lockFile = ./Cargo.lock;
        cargoBuildFlags = [ "--package" "flywheel-bench" ];
        # Only the lib tests run in the build sandbox; the end-to-end tests need real nix,
        # bazel and nginx and run in CI (.ci/run). Some lib tests spawn git or setsid (from
        # util-linux); the https ones bring their own CA file, as the sandbox has none.
        # scripts/check-pinned-rust runs them in CI the way this check phase does.
        cargoTestFlags = [ "--package" "flywheel-bench" "--lib" ];
        nativeCheckInputs = with pkgs; [ git util-linux ];
        postInstall = ''
          mkdir -p $out/share/flywheel-bench
          cp -r bench-repos lanes.toml $out/share/flywheel-bench/
        '';
        meta.mainProgram = "flywheel-bench";
      };

      systemOf = pkgs: pkgs.stdenv.hostPlatform.system;

      vmTests = pkgs: import ./nixos-tests {
        inherit pkgs nix-vm-test;
        system = systemOf pkgs;
        bench = harness pkgs;
      };
    in
    {
      # The VM tests need a host with KVM (the `kvm` system feature), so they are packages,
      # not checks: `nix flake check` passes on any host, and a KVM host runs
      # `nix build .#vm-smoke-debian` (the sandboxed smoke test) or `.#vm-test-debian`.
      packages = forAllSystems (pkgs:
        { default = harness pkgs; }
        // nixpkgs.lib.optionalAttrs (systemOf pkgs == "x86_64-linux")
          ((vmTests pkgs).drivers // (vmTests pkgs).checks));

      apps = forAllSystems (pkgs:
        let
          bench = pkgs.writeShellApplication {
            name = "flywheel-bench";
            runtimeInputs = benchTools pkgs;
            text = ''
              # Without a checkout's bench-repos/ here, use the ones shipped with the package.
              if [ -z "''${FLYWHEEL_BENCH_REPOS:-}" ] && [ ! -d bench-repos ]; then
                export FLYWHEEL_BENCH_REPOS=${harness pkgs}/share/flywheel-bench/bench-repos
              fi
              # `nix run .#bench` alone runs the default bench.
              if [ "$#" -eq 0 ]; then set -- run; fi
              exec ${harness pkgs}/bin/flywheel-bench "$@"
            '';
          };
        in
        {
          bench = { type = "app"; program = "${bench}/bin/flywheel-bench"; };
          default = self.apps.${systemOf pkgs}.bench;
        });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = (benchTools pkgs) ++ (with pkgs; [ cargo rustc clippy rustfmt shellcheck actionlint ]);
        };
        # The gpu lane's shell: the CUDA toolkit (nvcc) beside the bench tools. The driver
        # comes from the host (nvidia-smi, /dev/nvidia*), as on any GPU runner.
        gpu =
          let
            cudaPkgs = import nixpkgs { system = systemOf pkgs; config = { allowUnfree = true; cudaSupport = true; }; };
          in
          pkgs.mkShell {
            packages = (benchTools pkgs) ++ [ cudaPkgs.cudaPackages.cudatoolkit ];
            shellHook = "export CUDA_PATH=${cudaPkgs.cudaPackages.cudatoolkit}";
          };
      });

      checks = forAllSystems (pkgs: {
        build = harness pkgs;
        clippy = (harness pkgs).overrideAttrs (old: {
          pname = "flywheel-bench-clippy";
          nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
          buildPhase = "cargo clippy --offline --all-targets -- -D warnings";
          doCheck = false;
          installPhase = "touch $out";
        });
      });
    };
}
