// esbuild bundles the stylesheets the console imports.
declare module "*.css";
