{
  description = "flywheel-bench fixture: a DAG of C compile steps built with host tools, no inputs";
  outputs = { self }: {
    packages.x86_64-linux.default = import ./default.nix { system = "x86_64-linux"; };
  };
}
