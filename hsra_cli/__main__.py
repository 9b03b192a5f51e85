from hsra_cli.cli import main

main()
