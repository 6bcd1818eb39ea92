from llmdeploy.cli.fast import main

main()
